"""Masks: ``str -> str`` functions applied to message text before it is stored.

Pass them as ``mask=[...]`` to the manager or the factory. Every text block, every string in a
tool's input and every text (or JSON string) of a tool's result goes through each mask in
order on its way to MongoDB; the agent keeps the original text in memory. Any callable works::

    from mongodb_session_manager.masking import CARD_NUMBER, EMAIL, IBAN, PHONE
    manager = MongoDBSessionManager(..., mask=[EMAIL, CARD_NUMBER, IBAN, PHONE, my_mask])

The built-ins replace what they find with a tag (``[email]``, ``[phone]``, ``[card]``,
``[iban]``). Card numbers must pass the Luhn check and IBANs the ISO 7064 mod-97 check, so
order ids and other long numbers are left alone (a phone number is 7 to 15 digits, written
with a ``+``, brackets or separators, or at most 11 bare digits). Put ``CARD_NUMBER`` and
``IBAN`` before ``PHONE``: a phone pattern is loose enough to see digits in them otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from strands.types.content import Message

__all__ = ["CARD_NUMBER", "EMAIL", "IBAN", "PHONE", "Mask", "mask_message", "mask_text"]

MaskFunction = Callable[[str], str]


@dataclass(frozen=True)
class Mask:
    """A regular expression, the tag that replaces a match, and a check a match must pass."""

    name: str
    pattern: re.Pattern[str]
    replacement: str
    check: Callable[[str], bool] | None = None

    def __call__(self, text: str) -> str:
        if self.check is None:
            return self.pattern.sub(self.replacement, text)
        check = self.check
        return self.pattern.sub(lambda m: self.replacement if check(m.group(0)) else m.group(0), text)

    def __repr__(self) -> str:
        return f"Mask({self.name})"


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdigit())


def _luhn(candidate: str) -> bool:
    digits = [int(d) for d in _digits(candidate)]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rotated)
    return int(number) % 97 == 1


def _phone_like(candidate: str) -> bool:
    # 7 to 15 digits (E.164); a long run of bare digits is an id, not a phone number.
    count = len(_digits(candidate))
    written_as_phone = candidate.startswith(("+", "(")) or any(sep in candidate for sep in " ().-")
    return 7 <= count <= 15 and (written_as_phone or count <= 11)


EMAIL = Mask("EMAIL", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]")
CARD_NUMBER = Mask("CARD_NUMBER", re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"), "[card]", _luhn)
# Upper case, compact or in the printed groups of four (ISO 13616).
IBAN = Mask(
    "IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), "[iban]", _iban_valid
)
PHONE = Mask("PHONE", re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{5,18}\d(?!\w)"), "[phone]", _phone_like)


def mask_text(text: str, masks: Sequence[MaskFunction]) -> str:
    """``text`` through every mask, in order."""
    for mask in masks:
        text = mask(text)
    return text


def mask_message(message: Message, masks: Sequence[MaskFunction]) -> Message:
    """A copy of ``message`` with its text masked; binary content is shared, not copied."""
    if not masks:
        return message
    content = [_mask_block(block, masks) for block in message.get("content") or []]
    return cast(Message, {**message, "content": content})


def _mask_block(block: Any, masks: Sequence[MaskFunction]) -> Any:
    if not isinstance(block, Mapping):
        return block
    masked = dict(block)
    if isinstance(block.get("text"), str):
        masked["text"] = mask_text(block["text"], masks)
    if "json" in block:
        masked["json"] = _mask_strings(block["json"], masks)
    tool_use = block.get("toolUse")
    if isinstance(tool_use, Mapping) and "input" in tool_use:
        masked["toolUse"] = {**tool_use, "input": _mask_strings(tool_use["input"], masks)}
    tool_result = block.get("toolResult")
    if isinstance(tool_result, Mapping) and isinstance(tool_result.get("content"), list):
        inner = [_mask_block(item, masks) for item in tool_result["content"]]
        masked["toolResult"] = {**tool_result, "content": inner}
    reasoning = block.get("reasoningContent")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("reasoningText"), Mapping):
        text = reasoning["reasoningText"]
        if isinstance(text.get("text"), str):
            masked["reasoningContent"] = {
                **reasoning,
                "reasoningText": {**text, "text": mask_text(text["text"], masks)},
            }
    return masked


def _mask_strings(value: Any, masks: Sequence[MaskFunction]) -> Any:
    if isinstance(value, str):
        return mask_text(value, masks)
    if isinstance(value, Mapping):
        return {key: _mask_strings(item, masks) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_strings(item, masks) for item in value]
    return value
