"""How returned outputs are read: a forward step's business failure, a compensation's refusal.

The seed's workers often report failure in the dict they return rather than by raising; these pure
functions are where the machine decides what such an output means.
"""

from __future__ import annotations

from typing import Any

from multiagents._json import dumps, loads
from multiagents.errors import ErrorCategory, ErrorInfo
from multiagents.workflow import Step

__all__ = ["business_failure", "compensation_refusal"]


def business_failure(step: Step, output: dict[str, Any]) -> ErrorInfo | None:
    """The permanent failure ``step.fail_if`` sees in ``output``, or None if the output is a success."""
    if step.fail_if is None:
        return None
    try:
        failed = bool(step.fail_if(loads(dumps(output))))  # a copy: the stored output stays as returned
    except Exception as exc:
        return ErrorInfo(
            ErrorCategory.PERMANENT,
            f"fail_if of step {step.name!r} raised {type(exc).__name__}: {exc}",
            type(exc).__name__,
        )
    if not failed:
        return None
    detail = output.get("error") or output.get("status") or "fail_if matched the output"
    return ErrorInfo(
        ErrorCategory.PERMANENT, f"step {step.name!r} failed: {detail}", "StepFailed", types=("StepFailed",)
    )


def compensation_refusal(output: dict[str, Any]) -> str | None:
    """Why a compensation's returned output says it failed, or None if it says it succeeded.

    The seed's compensations report failure in their output rather than by raising: at the top
    (``compensation_status: "failed"``, ``requires_manual_intervention: True``) or per item one level
    down (``failed_releases: [{..., "requires_manual_intervention": True}]``).
    """
    if output.get("compensation_status") == "failed":
        return "the compensation reported compensation_status 'failed'"
    if output.get("requires_manual_intervention") is True:
        return "the compensation reported requires_manual_intervention"
    for key, value in output.items():
        items = value if isinstance(value, list) else [value]
        flagged = [i for i in items if isinstance(i, dict) and i.get("requires_manual_intervention") is True]
        if flagged:
            return f"{len(flagged)} item(s) in {key!r} require manual intervention"
    return None
