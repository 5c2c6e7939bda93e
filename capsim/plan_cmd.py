"""``capsim plan``: the planning question in one command (a goal in, the GPUs, layout, replicas and
cost out). Each subcommand lives in its own module, defines itself on :data:`plan_app`, and is
imported at the bottom of this file; ``capsim.cli`` adds the group as ``plan``."""

from __future__ import annotations

import typer

plan_app = typer.Typer(no_args_is_help=True, help=(
    "Answer a planning goal: which GPU, how many, in what layout or with how many replicas, and the cost"))
from . import plan_budget_cmd, plan_serve_cmd, plan_train_cmd  # noqa: E402,F401  (capsim plan budget/serve/train)
