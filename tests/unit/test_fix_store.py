"""The FIX session store: what must survive a proxy restart."""

from __future__ import annotations

from clearing_fix.store import FileSessionStore


def test_sequence_numbers_and_sent_messages_survive_a_restart(tmp_path):
    store = FileSessionStore(tmp_path, "CLEARHOUSE-EXCHANGE", fsync=False)
    store.save_outgoing(2, b"8=FIX.4.4\x0135=D\x0134=2\x01", "MBR01:C-1")
    store.set_next_sender_seq(3)
    store.set_next_target_seq(9)
    store.close()

    again = FileSessionStore(tmp_path, "CLEARHOUSE-EXCHANGE", fsync=False)

    assert (again.next_sender_seq, again.next_target_seq) == (3, 9)
    assert again.seq_for_request("MBR01:C-1") == 2
    assert again.request_for_seq(2) == "MBR01:C-1"
    assert again.get_outgoing(2) == b"8=FIX.4.4\x0135=D\x0134=2\x01"


def test_a_journaled_message_wins_over_a_stale_seqnum_file(tmp_path):
    # Crash between journaling message 5 and rewriting the seqnums record: 5 was used, never reuse it.
    store = FileSessionStore(tmp_path, "S-T", fsync=False)
    store.set_next_sender_seq(5)
    store.save_outgoing(5, b"raw", "T-1")
    store.close()

    assert FileSessionStore(tmp_path, "S-T", fsync=False).next_sender_seq == 6


def test_a_torn_last_journal_line_is_ignored(tmp_path):
    store = FileSessionStore(tmp_path, "S-T", fsync=False)
    store.save_outgoing(2, b"two", "A")
    store.close()
    with open(tmp_path / "S-T" / "outgoing.jsonl", "a") as journal:
        journal.write('{"seq": 3, "request_id": "B", "ra')

    again = FileSessionStore(tmp_path, "S-T", fsync=False)

    assert again.seq_for_request("A") == 2
    assert again.seq_for_request("B") is None


def test_outgoing_between_returns_stored_messages_in_order(tmp_path):
    store = FileSessionStore(tmp_path, "S-T", fsync=False)
    for seq in (7, 3, 5):
        store.save_outgoing(seq, f"m{seq}".encode())

    assert store.outgoing_between(4, 7) == [(5, b"m5"), (7, b"m7")]
    assert store.outgoing_between(8, 20) == []


def test_a_corrupt_seqnums_record_falls_back_to_the_journal(tmp_path):
    store = FileSessionStore(tmp_path, "S-T", fsync=False)
    store.save_outgoing(4, b"four", "A")
    store.set_next_sender_seq(5)
    store.close()
    (tmp_path / "S-T" / "seqnums").write_bytes(b"00000000000000000005 0000000")  # torn write

    again = FileSessionStore(tmp_path, "S-T", fsync=False)

    assert again.next_sender_seq == 5  # never reuses a number that went out
