"""The KEK ring: unwraps by the KEK id stored with a wrap, and its configuration's errors."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from ledger.keys import crypto
from ledger.keys.crypto import KekNotConfigured, LocalKek, new_secret
from ledger.keys.kek import KeyRing
from ledger.keys.keystore import KeyStore
from ledger.process.settings import ConfigError, load
from ledger.storage.memory import InMemoryLedgerRecorder

OLD, NEW = new_secret(), new_secret()
CONTEXT = crypto.subject_context(uuid.uuid4())


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def ring(*keys: tuple[str, bytes]) -> KeyRing:
    (current_id, current), *previous = keys
    return KeyRing(LocalKek(current, current_id), [LocalKek(k, i) for i, k in previous])


def test_new_wraps_use_the_current_kek_and_old_ones_unwrap_by_their_id() -> None:
    data_key = crypto.new_data_key()
    old_wrap = ring(("kek-1", OLD)).wrap(data_key, CONTEXT)
    rotated = ring(("kek-2", NEW), ("kek-1", OLD))

    assert rotated.key_id == "kek-2" and rotated.key_ids == ("kek-2", "kek-1")
    assert rotated.unwrap(old_wrap, CONTEXT, kek_id="kek-1") == data_key
    new_wrap = rotated.wrap(data_key, CONTEXT)
    assert LocalKek(NEW, "kek-2").unwrap(new_wrap, CONTEXT) == data_key
    with pytest.raises(crypto.CannotOpen):  # the id is bound: kek-1's wrap is not kek-2's
        rotated.unwrap(old_wrap, CONTEXT, kek_id="kek-2")


def test_without_an_id_every_configured_kek_is_tried() -> None:
    data_key = crypto.new_data_key()
    old_wrap = ring(("kek-1", OLD)).wrap(data_key, CONTEXT)
    assert ring(("kek-2", NEW), ("kek-1", OLD)).unwrap(old_wrap, CONTEXT) == data_key
    with pytest.raises(crypto.CannotOpen):
        ring(("kek-2", NEW)).unwrap(old_wrap, CONTEXT)


def test_a_wrap_under_a_kek_that_left_the_ring_names_the_kek_not_the_key() -> None:
    old_wrap = ring(("kek-1", OLD)).wrap(crypto.new_data_key(), CONTEXT)
    with pytest.raises(KekNotConfigured, match="'kek-1', which is not configured") as raised:
        ring(("kek-2", NEW)).unwrap(old_wrap, CONTEXT, kek_id="kek-1")
    assert b64(OLD) not in str(raised.value)


def test_the_key_store_unwraps_each_subject_key_with_the_kek_of_its_row() -> None:
    store = InMemoryLedgerRecorder()
    old_id, new_id = uuid.uuid4(), uuid.uuid4()
    old_key, old_row = KeyStore(store, ring(("kek-1", OLD)), new_secret()).create(old_id, "a")
    rotated = ring(("kek-2", NEW), ("kek-1", OLD))
    new_key, new_row = KeyStore(store, rotated, new_secret()).create(new_id, "a")
    store.keys.update({old_id: old_row, new_id: new_row})

    fresh = KeyStore(store, rotated, new_secret())  # nothing cached
    assert (old_row.kek_id, new_row.kek_id) == ("kek-1", "kek-2")
    assert fresh.data_keys([old_id, new_id]) == {old_id: old_key, new_id: new_key}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_KEK": b64(NEW), "LEDGER_KEK_ID": "kek-2"}


def test_previous_keks_are_read_from_the_environment(env: dict[str, str]) -> None:
    third = new_secret()
    s = load({**env, "LEDGER_KEK_PREVIOUS": f"kek-1:{b64(OLD)}, kek-0:{b64(third)}"})
    assert (s.kek, s.kek_id) == (NEW, "kek-2")
    assert s.kek_previous == (("kek-1", OLD), ("kek-0", third))


def test_a_kek_file_names_the_current_kek_first(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "keks"
    path.write_text(f"# rotated 2026-11\nkek-2:{b64(NEW)}\n\nkek-1:{b64(OLD)}\n")
    s = load({"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_KEK_FILE": str(path)})
    assert (s.kek, s.kek_id, s.kek_previous) == (NEW, "kek-2", (("kek-1", OLD),))


@pytest.mark.parametrize(
    ("previous", "message"),
    [
        (b64(OLD), "LEDGER_KEK_PREVIOUS entry 1 is not KEK_ID:BASE64_KEY"),
        (f"{b64(OLD)}:kek-1", "LEDGER_KEK_PREVIOUS entry 1's id is not a valid KEK id"),
        (f"kek-1:{b64(OLD)[:-4]}!!!!", r"entry 1 \(KEK kek-1\) is not valid base64"),
        (f"kek-0:{b64(OLD)},kek-1:{b64(OLD[:16])}", "entry 2 .* must decode to 32 bytes, got 16"),
        (f"kek-2:{b64(OLD)}", "KEK id kek-2 is configured twice"),
        (f"kek-1:{b64(NEW)}", "previous KEK kek-1 holds the same key as another"),
    ],
)
def test_a_bad_previous_kek_is_refused_without_echoing_key_material(
    env: dict[str, str], previous: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load({**env, "LEDGER_KEK_PREVIOUS": previous})
    text = str(raised.value)
    for secret in (OLD, NEW, OLD[:16]):
        assert b64(secret) not in text and b64(secret)[:12] not in text


def test_previous_keks_without_a_current_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LEDGER_KEK_PREVIOUS is set but LEDGER_KEK is not"):
        load({"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_KEK_PREVIOUS": f"kek-1:{b64(OLD)}"})


def test_a_bad_current_kek_id_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="LEDGER_KEK_ID is not a valid KEK id"):
        load({**env, "LEDGER_KEK_ID": "kek 2:x"})


def test_a_kek_file_excludes_the_kek_variables(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "keks"
    path.write_text(f"kek-2:{b64(NEW)}\n")
    with pytest.raises(ConfigError, match="either LEDGER_KEK_FILE or LEDGER_KEK, LEDGER_KEK_ID"):
        load({**env, "LEDGER_KEK_FILE": str(path)})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "LEDGER_KEK_FILE .* cannot be read: No such file"),
        ("# nothing yet\n", "holds no KEK"),
        (f"kek-2 {b64(NEW)}\n", "LEDGER_KEK_FILE entry 1 is not KEK_ID:BASE64_KEY"),
    ],
)
def test_a_bad_kek_file_is_refused_without_echoing_it(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keks"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load({"LEDGER_DATA_DIR": str(tmp_path), "LEDGER_KEK_FILE": str(path)})
    assert b64(NEW) not in str(raised.value)
