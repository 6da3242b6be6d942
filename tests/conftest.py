"""The core's fixtures (defined in fktest.py, where tests import helpers from)."""
from fktest import _isolated_plugins, _moto_server, project, run_cli, s3  # noqa: F401  (fixtures)
