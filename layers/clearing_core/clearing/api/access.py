"""Who may read what: the one authorization decision of the member API, a pure function of token claims.

The same code decides in AWS and locally. In AWS the API Gateway JWT authorizer has verified the Cognito
token (RS256, issuer, audience, expiry) and the Lambda reads its claims from the request context; the
local console server verifies its development token itself (clearing_tools.local.console) and hands the same
claims to the same handler. Rules:
- `custom:member_id` names the member the caller acts for; `cognito:groups` containing `operators`
  makes the caller an operator.
- An operator reads every member's data; a member reads only its own.
- A caller that is neither (no member claim, no operator group) is refused (401).
- A member asking for another member's listing (`?member=OTHER`) gets 403; a single record of another
  member (an order, a trade) is answered 404, as if it did not exist: ids are not confirmed to others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MEMBER_CLAIM = "custom:member_id"
GROUPS_CLAIM = "cognito:groups"
OPERATORS_GROUP = "operators"
MEMBER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class NotAuthenticated(Exception):
    """No usable identity in the claims (401)."""


class AccessDenied(Exception):
    """An identified caller asked for data that is not theirs (403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    member_id: str | None
    operator: bool

    def can_read(self, member_id: str | None) -> bool:
        return self.operator or (member_id is not None and member_id == self.member_id)


def _groups(value: Any) -> set[str]:
    """cognito:groups as a list (JSON claims), or as API Gateway passes it: "[a b]" or "a,b" or "a"."""
    if value is None:
        return set()
    if isinstance(value, list | tuple | set):
        return {str(v) for v in value}
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return {str(v) for v in parsed}
        except ValueError:
            text = text[1:-1]
    return {g for g in re.split(r"[\s,]+", text) if g}


def principal_from_claims(claims: Mapping[str, Any] | None) -> Principal:
    """The caller, from verified token claims; NotAuthenticated when they name no member and no operator."""
    if not claims:
        raise NotAuthenticated("no token claims")
    operator = OPERATORS_GROUP in _groups(claims.get(GROUPS_CLAIM))
    member = claims.get(MEMBER_CLAIM)
    if member is not None:
        member = str(member)
        if not MEMBER_ID.match(member):
            raise NotAuthenticated("malformed member claim")
    if not operator and not member:
        raise NotAuthenticated("the token names neither a member nor the operators group")
    return Principal(
        subject=str(claims.get("sub") or member or "operator"), member_id=member, operator=operator
    )


def member_scope(principal: Principal, requested: str | None) -> str | None:
    """The member a listing is restricted to: the caller's own for members (None = all, operators only).

    A member may name itself or nothing; naming another member is AccessDenied (403)."""
    if principal.operator:
        return requested or None
    if requested and requested != principal.member_id:
        raise AccessDenied(f"member {principal.member_id} may not read member {requested}'s data")
    return principal.member_id


def require_operator(principal: Principal) -> None:
    if not principal.operator:
        raise AccessDenied("operators only")
