"""The customer database: engines, schema, identifiers, recipient lists, the schedule, demo seed.

Import each name from the module that defines it (this package re-exports nothing, so importing
one module never drags in the others): :mod:`.engines` (engines, safe URLs), :mod:`.schema`
(tables), :mod:`.identifiers` (the one normalisation), :mod:`.recipients` (the customer table,
frozen lists and their reading), :mod:`.freeze` (freezing a list), :mod:`.queries` (the campaign
schedule, and the public names of the two before), :mod:`.demo_data` and :mod:`.seed` (demo
data and writing it, ``cheetah-seed``), :mod:`.resource` (the Dagster resource). Only the
resource imports Dagster.
"""
