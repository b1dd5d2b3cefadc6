"""The Segment Spec message, as we accept it (README "Topics" and ``schemas/``).

Unknown top-level fields are kept (Segment allows them); known fields are type-checked.
Numbers are accepted for ``userId``/``anonymousId``/``previousId``/``messageId`` and
turned into strings, as Segment's own pipeline does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictStr

from streams.model import CALL_TYPES, JSONDict

#: The six Segment calls, the only values of ``type`` we accept.
CALLS = frozenset(CALL_TYPES)


def _id_str(v: Any) -> Any:
    if isinstance(v, bool):
        return v  # rejected below: True is not an id
    if isinstance(v, int | float):
        return str(int(v)) if float(v).is_integer() else str(v)
    return v


IdStr = Annotated[StrictStr, BeforeValidator(_id_str)]


class SegmentMessage(BaseModel):
    """One Segment call. ``type`` decides which extra fields matter."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    type: Literal["identify", "track", "page", "screen", "group", "alias"]
    message_id: IdStr | None = Field(default=None, alias="messageId")
    anonymous_id: IdStr | None = Field(default=None, alias="anonymousId")
    user_id: IdStr | None = Field(default=None, alias="userId")
    timestamp: StrictStr | None = None
    original_timestamp: StrictStr | None = Field(default=None, alias="originalTimestamp")
    sent_at: StrictStr | None = Field(default=None, alias="sentAt")
    received_at: StrictStr | None = Field(default=None, alias="receivedAt")
    context: JSONDict | None = None
    properties: JSONDict | None = None
    traits: JSONDict | None = None
    event: StrictStr | None = None
    name: StrictStr | None = None
    previous_id: IdStr | None = Field(default=None, alias="previousId")
    group_id: IdStr | None = Field(default=None, alias="groupId")
    channel: StrictStr | None = None
    integrations: JSONDict | None = None
