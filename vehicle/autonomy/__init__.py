"""Fallback autonomy: the provider interface and the built-in route follower and risk stop."""

from teledrive.vehicle.autonomy.base import (
    AutonomyInput,
    AutonomyOutput,
    AutonomyProvider,
    AutonomyStatus,
    Pose,
    RangeReading,
)
from teledrive.vehicle.autonomy.risk_stop import RiskStop
from teledrive.vehicle.autonomy.route_follower import RouteFollower, RouteFollowerConfig

__all__ = [
    "AutonomyInput",
    "AutonomyOutput",
    "AutonomyProvider",
    "AutonomyStatus",
    "Pose",
    "RangeReading",
    "RiskStop",
    "RouteFollower",
    "RouteFollowerConfig",
]
