"""Set-up checks: the seed guide's set-up steps 1-7, each failure one sentence naming its setting.

``check_account`` verifies what Cheetah Messaging can tell us (settings, credentials, IP
whitelist, Folder ID, PROP_MAP_ID and its identifier field); ``check_customer_database``
verifies the Optimove side (identifier column, every Data Map field a template uses). Run them
all from a shell with ``python -m cheetah_assets.sending.setup``.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa

from ..cheetah.contract import DataMap
from ..cheetah.errors import CheetahError, ConfigurationError, MalformedResponse, UnknownDataMap, UnknownFolder
from ..customers import queries
from ..customers.engines import CustomerDatabaseError, engine_for, safe_url
from .catalog import CatalogEntry
from .findings import Finding, failures
from .send_path_check import check_send_path

__all__ = ["Finding", "failures", "check_account", "check_customer_database", "check_send_path"]

EXPECTED_FOLDER_NAME = "Optimove"


def check_account(resource) -> tuple[list[Finding], DataMap | None]:
    """Settings, credentials and whitelist, Folder ID, PROP_MAP_ID, and the send path on the test
    address (``send_path_check.py``). Cust_ID is checked for form here, and for real by the send
    path check's campaign creation (the API has no read of it)."""
    findings: list[Finding] = []
    try:
        settings = resource.settings()
    except ConfigurationError as exc:
        return [Finding("settings", False, str(exc))], None
    findings.append(Finding("settings", True, f"endpoint {settings.endpoint}, Cust_ID {settings.cust_id}"))
    client = resource.get_client()
    try:
        try:
            client.check_access()
        except CheetahError as exc:
            return findings + [Finding("credentials", False, str(exc))], None
        findings.append(Finding("credentials", True, "the consumer key, secret and client identifier are accepted"))
        try:
            folder = client.get_folder()
        except UnknownFolder as exc:
            findings.append(Finding("folder", False, str(exc)))
        except CheetahError as exc:  # e.g. a 400: an id of a shape the account does not use (ids are opaque)
            findings.append(Finding("folder", False, f"Folder ID {client.settings.folder_id} was not accepted: {exc}"))
        else:
            # Set-up step 5 names the folder "Optimove"; another name may be a mistyped Folder ID
            # (campaigns would be created there). Its templates still work: a warning, not a block.
            if folder.name == EXPECTED_FOLDER_NAME:
                findings.append(Finding("folder", True, f"Folder ID {folder.id} is the folder {folder.name!r}"))
            else:
                findings.append(
                    Finding(
                        "folder",
                        False,
                        f"Folder ID {folder.id} is the folder {folder.name!r}, not the folder named "
                        f"{EXPECTED_FOLDER_NAME!r} of set-up step 5: check Folder ID (its templates are "
                        "used and its campaigns created there all the same).",
                        blocking=False,
                    )
                )
        try:
            data_map = client.get_data_map()
            ident = data_map.identifier
        except (UnknownDataMap, MalformedResponse) as exc:
            findings.append(Finding("data_map", False, str(exc)))
            return findings, None
        except CheetahError as exc:  # as for the folder: the id may be of a shape the account does not use
            findings.append(Finding("data_map", False, f"PROP_MAP_ID {client.settings.prop_map_id} was not accepted: {exc}"))
            return findings, None
        findings.append(
            Finding("data_map", True, f"PROP_MAP_ID {data_map.id}: identifier {ident.name} maps to {ident.map_to!r}")
        )
        findings.append(check_send_path(client, data_map, getattr(resource, "test_address", "")))
        return findings, data_map
    finally:
        client.close()


def check_customer_database(
    engine: sa.Engine, data_map: DataMap, catalog: dict[str, CatalogEntry] | None = None
) -> list[Finding]:
    """The identifier column exists and is not a floating-point one (blocking); each template's fields are mapped and exist (not
    blocking: a campaign using a broken template is stopped alone, with that reason)."""
    ident = data_map.identifier
    try:
        customers = queries.reflect_customers(engine)
    except queries.CustomerSchemaError as exc:  # no customers table: the sentence names the database
        return [Finding("identifier_column", False, str(exc))]
    except sa.exc.SQLAlchemyError as exc:  # unreachable server, no such database, refused login
        return [Finding("identifier_column", False, database_problem(engine.url, exc))]
    columns = set(customers.columns.keys())
    findings = []
    problem = queries.identifier_column_problem(customers, ident.map_to, ident.name) if ident.map_to in columns else None
    if problem is not None:
        findings.append(Finding("identifier_column", False, problem))
    elif ident.map_to in columns:
        findings.append(Finding("identifier_column", True, f"customers.{ident.map_to} holds the identifier {ident.name}"))
    else:
        findings.append(
            Finding(
                "identifier_column",
                False,
                f"The customers table has no column {ident.map_to!r}, which the Data Map's identifier field "
                f"{ident.name} maps to (set-up steps 1-2).",
            )
        )
    by_name = data_map.by_name()
    for t in sorted((catalog or {}).values(), key=lambda e: e.obj_id):
        for f in t.fields:
            if f not in by_name:
                msg = f"Template {t.obj_id} ({t.display_name}) uses field {f}, which is not in the Data Map."
            elif by_name[f].map_to not in columns:
                msg = (
                    f"Template {t.obj_id} ({t.display_name}) uses field {f}, mapped to column "
                    f"{by_name[f].map_to!r}, which the customers table does not have (set-up step 3)."
                )
            else:
                continue
            findings.append(Finding(f"template_{t.obj_id}", False, msg, blocking=False))
    return findings


def database_problem(url: str | sa.URL, exc: Exception) -> str:
    """One sentence for a customer database that cannot be opened: its URL without the password,
    and the first line of the driver's reason (the password masked there too, should it appear)."""
    reason = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(reason).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    try:
        shown, password = safe_url(url), sa.make_url(url).password
    except sa.exc.ArgumentError:  # not even a URL: show none of it
        shown, password = "(not a database URL)", None
    if password:
        first = first.replace(str(password), "***")
    return f"Cannot open the customer database {shown} (CUSTOMER_DB_URL): {first}"


def customer_database_findings(
    url: str, data_map: DataMap, catalog: dict[str, CatalogEntry] | None = None
) -> list[Finding]:
    """:func:`check_customer_database` on the database at ``url``; a database that cannot be
    opened (a missing SQLite file, a URL that is not one, a missing driver) is one failed finding."""
    try:
        engine = engine_for(url)
    except CustomerDatabaseError as exc:
        return [Finding("identifier_column", False, str(exc))]
    except (sa.exc.SQLAlchemyError, ImportError) as exc:  # ImportError: the URL's driver is not installed
        return [Finding("identifier_column", False, database_problem(url, exc))]
    return check_customer_database(engine, data_map, catalog)


def folder_catalog(resource) -> tuple[dict[str, CatalogEntry] | None, list[Finding]]:
    """Every template of the account's folder, as the day's catalog holds it; or a finding saying
    why the folder's templates could not be listed."""
    try:
        with resource.get_client() as client:
            templates = list(client.iter_templates())
    except CheetahError as exc:
        return None, [Finding("templates", False, f"The folder's templates could not be listed: {exc}")]
    catalog = {str(t.obj_id): CatalogEntry(str(t.obj_id), t.display_name, tuple(t.fields)) for t in templates}
    return catalog, [Finding("templates", True, f"{len(catalog)} templates in the folder")]


def fails_setup(finding: Finding) -> bool:
    """Whether ``finding`` fails the set-up command: a blocking failure, or a template whose fields
    are not mapped (set-up step 3 is not done; each campaign using it would be stopped)."""
    return not finding.ok and (finding.blocking or finding.check.startswith("template_"))


def main(argv: list[str] | None = None) -> int:
    """Print every set-up check for the configured environment, one line each; exit 1 if a
    blocking one fails or a template of the folder personalises with an unmapped field."""
    import os

    from .. import configuration
    from ..cheetah.resource import ENV_VARS, TEST_ADDRESS_VAR, CheetahMessagingResource

    if configuration.demo_requested():
        resources = configuration.demo_resources()
        cheetah, url = resources["cheetah"], resources["customer_db"].url
    else:
        problems = configuration.configuration_problems()
        if problems:
            print(f"FAIL  settings: {configuration.not_configured_message(problems)}")
            return 1
        # Outside a run, EnvVars are not resolved: read the same variables directly.
        cheetah = CheetahMessagingResource(
            **{field: os.environ[var] for field, var in ENV_VARS.items()},
            test_address=os.environ.get(TEST_ADDRESS_VAR, ""),
            require_https=True,
        )
        url = os.environ[configuration.CUSTOMER_DB_VARIABLE]
    findings, data_map = check_account(cheetah)
    if data_map is not None:
        catalog, listed = folder_catalog(cheetah)
        findings += listed
        findings += customer_database_findings(url, data_map, catalog)
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL' if fails_setup(f) else 'warn'}  {f.check}: {f.message}")
    return 1 if any(fails_setup(f) for f in findings) else 0


if __name__ == "__main__":
    sys.exit(main())
