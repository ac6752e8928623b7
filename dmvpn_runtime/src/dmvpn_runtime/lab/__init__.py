"""The lab: DMVPN hosts as network + mount namespaces on one machine (docs/lab.md).

Python API::

    from dmvpn_runtime.lab import Lab
    with Lab.up({"hubs": [{"name": "hub1"}], "spokes": [{"name": "spoke1"}]}) as lab:
        lab.node("spoke1").exec(["ping", "-c1", lab.node("hub1").nbma[0]], check=True)

The CLI ``dmvpn-lab`` (``dmvpn_runtime.cli.lab``) is a thin layer over this package.
"""

from .config import render_node_config
from .errors import CommandError, LabError, LabExistsError, LabNotFoundError, SpecError, SpecProblem
from .lab import Lab, Node, pick_lab
from .layout import DEFAULT_STATE_ROOT, NETNS_PREFIX, netns_prefix
from .model import LabSpec, NodeSpec
from .spec import default_spec_text, load_spec
from .teardown import TeardownReport, leftovers, list_labs, teardown

__all__ = [
    "DEFAULT_STATE_ROOT",
    "NETNS_PREFIX",
    "CommandError",
    "Lab",
    "LabError",
    "LabExistsError",
    "LabNotFoundError",
    "LabSpec",
    "Node",
    "NodeSpec",
    "SpecError",
    "SpecProblem",
    "TeardownReport",
    "default_spec_text",
    "leftovers",
    "list_labs",
    "load_spec",
    "netns_prefix",
    "pick_lab",
    "render_node_config",
    "teardown",
]
