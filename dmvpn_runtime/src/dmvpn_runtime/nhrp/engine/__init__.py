"""The sans-I/O NHRP engine (docs/engine.md): inputs with ``now`` in, actions out."""

from .actions import (
    WAKE,
    Action,
    AddMapping,
    AddRoute,
    ArmTimer,
    CancelTimer,
    Event,
    EventKind,
    IpsecDown,
    IpsecUp,
    MappingType,
    RemoveMapping,
    RemoveRoute,
    ResolveName,
    SendPacket,
)
from .auth import AllowAll, Authoriser, Decision
from .config import EngineConfig, Limits, NhsConfig, ResolutionMode, Role, StaticMapping
from .engine import Engine
from .policy import Policy, PolicyRule, Verdict
from .stats import Drop
from .views import CacheEntryView, NhsView, PeerView, RouteView, ShortcutView

__all__ = [
    "WAKE",
    "Action",
    "AddMapping",
    "AddRoute",
    "AllowAll",
    "ArmTimer",
    "Authoriser",
    "CacheEntryView",
    "CancelTimer",
    "Decision",
    "Drop",
    "Engine",
    "EngineConfig",
    "Event",
    "EventKind",
    "IpsecDown",
    "IpsecUp",
    "Limits",
    "MappingType",
    "NhsConfig",
    "NhsView",
    "PeerView",
    "Policy",
    "PolicyRule",
    "RemoveMapping",
    "RemoveRoute",
    "ResolutionMode",
    "ResolveName",
    "Role",
    "RouteView",
    "SendPacket",
    "ShortcutView",
    "StaticMapping",
    "Verdict",
]
