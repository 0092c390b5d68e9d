"""The generic masks: what each replaces, and that a message's shape decides the masking."""

import pytest

from telemetry.logs.masking import GenericMasking


@pytest.mark.parametrize(
    ("message", "tokens", "values"),
    [
        (
            "Invalid user admin from 173.234.31.186",
            "Invalid user admin from <IP>",
            ["173.234.31.186"],
        ),
        ("dest: /10.250.19.102:50010", "dest: /<IP>", ["10.250.19.102:50010"]),
        ("connect to proxy.example.com:5070", "connect to <HOST_PORT>", ["proxy.example.com:5070"]),
        ("GET https://x.io/a?b=1 done", "GET <URL> done", ["https://x.io/a?b=1"]),
        ("mail from ops@example.com", "mail from <EMAIL>", ["ops@example.com"]),
        (
            "req 123e4567-e89b-12d3-a456-426614174000",
            "req <UUID>",
            ["123e4567-e89b-12d3-a456-426614174000"],
        ),
        ("opened /var/log/app/x.log", "opened <PATH>", ["/var/log/app/x.log"]),
        ("loaded C:\\Windows\\system32\\x.dll", "loaded <PATH>", ["C:\\Windows\\system32\\x.dll"]),
        ("iar 0x1d dear 0245a2c8", "iar <NUM> dear <NUM>", ["0x1d", "0245a2c8"]),
        ("block blk_-1608999687919862906 done", "block <ID> done", ["blk_-1608999687919862906"]),
        ("took 250ms for 1.5GB", "took <DURATION> for <SIZE>", ["250ms", "1.5GB"]),
        (
            "sent 1190 bytes (1.16 KB), lifetime <1 sec",
            "sent <SIZE> (<SIZE>), lifetime <DURATION>",
            ["1190 bytes", "1.16 KB", "<1 sec"],
        ),
        ("uptime 1h2m3s", "uptime <DURATION>", ["1h2m3s"]),
        ("at Fri Jun 17 07:07:00 2005 ok", "at Fri <TIMESTAMP> ok", ["Jun 17 07:07:00 2005"]),
        ("on 2024-01-05 at 10:11:12", "on <DATE> at <TIME>", ["2024-01-05", "10:11:12"]),
        ("uid=0 user=root", "uid=<*> user=root", ["0"]),
        ('set name="a b c" now', "set name=<*> now", ['"a b c"']),
        ("state 6.", "state <NUM>.", ["6"]),
        ("jk2_init() Found child 6725", "jk2_init() Found child <NUM>", ["6725"]),
    ],
)
def test_masks(message: str, tokens: str, values: list[str]) -> None:
    masked, found = GenericMasking().mask_tokens(message)
    assert " ".join(masked) == tokens
    assert list(found) == values


def test_messages_of_one_shape_are_masked_alike() -> None:
    masking = GenericMasking()
    first = masking.mask_tokens("node R02-M1 sent 12 packets to 10.0.0.1")
    second = masking.mask_tokens("node R07-M3 sent 98 packets to 10.9.9.9")
    assert first[0] == ("node", "R02-M1", "sent", "<NUM>", "packets", "to", "<IP>")
    assert second[0] == ("node", "R07-M3", "sent", "<NUM>", "packets", "to", "<IP>")
    assert second[1] == ("98", "10.9.9.9")


def test_non_ascii_text_keeps_positions() -> None:
    masked, values = GenericMasking().mask_tokens("café 12 naïve 0x1f ✓")
    assert masked == ("café", "<NUM>", "naïve", "<NUM>", "✓")
    assert values == ("12", "0x1f")


def test_drain3_masking_interface() -> None:
    assert GenericMasking().mask("port 22  closed", "<", ">") == "port <NUM> closed"
