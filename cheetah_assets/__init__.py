"""cheetah_assets: the Dagster code location (``cheetah_assets.definitions:defs``); see the README.

Dagster 1.13 prints two warnings whenever the code location loads (every CLI command, the code
server, each run worker), ahead of anything else the command says. Both are about what this
project does knowingly, so they are filtered here, before any module defines anything (a filter
in the module that first needs it comes too late when another module is imported first):

* partitioned asset checks are "preview": they are what a per-day set-up check is;
* ``owners`` on ``SensorDefinition`` is "beta": Dagster's own copy of each sensor when it
  attaches jobs passes ``owners=[]``, so it warns even though no sensor here has owners.

Each filter matches that one message only; every other warning is shown as before.
"""

import warnings

warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec is currently in preview")
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta")
