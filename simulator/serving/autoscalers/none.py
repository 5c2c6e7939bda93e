"""``policy: none``: a fixed fleet of ``cluster.replicas``. No controller; a replica lost to a
failure is replaced at once (and starts cold), so only the cold-start keys apply."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import AutoscalingConfig


class NoneConfig(AutoscalingConfig):
    """A fixed fleet: cluster.replicas, replaced when lost."""

    policy: Literal["none"] = Field(default="none", description="no autoscaling: a fixed fleet of cluster.replicas")
