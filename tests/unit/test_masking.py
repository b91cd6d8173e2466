"""The built-in masks find what they name, and leave look-alikes alone."""

from __future__ import annotations

import pytest

from mongodb_session_manager.masking import CARD_NUMBER, EMAIL, IBAN, PHONE, mask_message, mask_text

ALL = [EMAIL, CARD_NUMBER, IBAN, PHONE]


@pytest.mark.parametrize(
    ("mask", "text", "masked"),
    [
        (EMAIL, "write to jane.doe+news@example.co.uk today", "write to [email] today"),
        (PHONE, "call +1 (415) 555-0132 or 030 1234567", "call [phone] or [phone]"),
        (CARD_NUMBER, "card 4111 1111 1111 1111, exp 12/29", "card [card], exp 12/29"),
        (CARD_NUMBER, "card 5500-0000-0000-0004", "card [card]"),
        (IBAN, "IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [iban] please"),
        (IBAN, "to GB82WEST12345698765432", "to [iban]"),
    ],
)
def test_each_built_in_masks_what_it_names(mask: object, text: str, masked: str) -> None:
    assert mask_text(text, [mask]) == masked  # type: ignore[list-item]


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # fails the Luhn check: not a card
        "ticket DE00 1234 5678 9012 3456 78",  # fails mod-97: not an IBAN
        "order id 1234567890123",  # 13 bare digits: an id, not a phone number
        "in 2024 we sold 12 units",
        "no at-sign here, example.com",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert mask_text(text, ALL) == text


def test_a_message_is_copied_with_its_text_and_tool_data_masked() -> None:
    image = b"\x89PNG" * 10
    message = {
        "role": "assistant",
        "content": [
            {"text": "mail jane@example.com"},
            {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"who": ["jane@example.com", 3]}}},
            {
                "toolResult": {
                    "toolUseId": "t1",
                    "status": "success",
                    "content": [{"text": "jane@example.com"}, {"json": {"mail": "jane@example.com"}}],
                }
            },
            {"image": {"format": "png", "source": {"bytes": image}}},
        ],
    }
    masked = mask_message(message, [EMAIL])  # type: ignore[arg-type]
    content = masked["content"]
    assert content[0] == {"text": "mail [email]"}
    assert content[1]["toolUse"] == {"toolUseId": "t1", "name": "lookup", "input": {"who": ["[email]", 3]}}
    assert content[2]["toolResult"]["content"] == [{"text": "[email]"}, {"json": {"mail": "[email]"}}]
    assert content[3]["image"]["source"]["bytes"] is image  # shared, not copied
    assert message["content"][0] == {"text": "mail jane@example.com"}  # the original is untouched
