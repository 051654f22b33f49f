"""Datasets: restricted unpickling, verified downloads (HTTP, mirror), conversion, and card checks."""

import hashlib
import os
import pickle

import numpy as np
import pytest
from helpers import FileServer, random_interactions, write_card, write_irllrec_dataset

from recrepro.data.canonical import DatasetError, InteractionData, load_canonical
from recrepro.data.cards import CardError, load_card
from recrepro.data.convert import prepare, random_split
from recrepro.data.fetch import ChecksumError, FetchError, fetch_files
from recrepro.data.safe_pickle import UnsafePickleError, safe_load


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/recrepro-pwned",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        safe_load(path)
    assert not os.path.exists("/tmp/recrepro-pwned")


def test_restricted_unpickler_loads_sparse_and_arrays():
    import scipy.sparse as sp

    matrix = sp.coo_matrix((np.ones(3), ([0, 1, 2], [2, 1, 0])), shape=(3, 3))
    loaded = safe_load(pickle.dumps(matrix))
    assert (loaded != matrix).nnz == 0
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(safe_load(pickle.dumps(array)), array)


@pytest.fixture
def toy(tmp_path):
    """A toy dataset in the published pickle format, its card, and the raw files' folder."""
    data = random_interactions(name="toy")
    sums = write_irllrec_dataset(data, tmp_path / "mirror" / "toy")
    files = {f"toy/{name}": (tmp_path / "mirror" / "toy" / name).read_bytes() for name in sums}
    return data, sums, files, tmp_path


def _card(tmp_path, data, sums, url):
    write_card(tmp_path / "cards", data, sums, url)
    load_card.cache_clear()
    return load_card(data.name, tmp_path / "cards")


def test_http_download_resumes_after_a_dropped_connection_and_converts(toy):
    data, sums, files, tmp_path = toy
    server = FileServer(files, truncate_first=True)
    with server.running():
        card = _card(tmp_path, data, sums, f"{server.url}/toy")
        paths = fetch_files(card.files, tmp_path / "raw", card.name, backoff=0)
    assert [p.name for p in paths] == list(sums)
    resumed = [rng for _, rng in server.requests if rng]
    assert len(resumed) == 3 and all(r.startswith("bytes=") and r != "bytes=0-" for r in resumed)
    loaded = prepare(card, tmp_path / "raw", tmp_path / "canonical")
    assert np.array_equal(loaded.train, data.train) and np.array_equal(loaded.test, data.test)
    assert load_canonical(tmp_path / "canonical", card).checksum == loaded.checksum


def test_corrupted_download_is_detected_and_never_left_in_place(toy):
    data, sums, files, tmp_path = toy
    server = FileServer(files, corrupt={"toy/val_mat.pkl"})
    with server.running():
        card = _card(tmp_path, data, sums, f"{server.url}/toy")
        with pytest.raises(ChecksumError, match="val_mat.pkl.*the card expects"):
            fetch_files(card.files, tmp_path / "raw", card.name, retries=2, backoff=0)
    raw = tmp_path / "raw"
    assert not (raw / "val_mat.pkl").exists() and not (raw / "val_mat.pkl.part").exists()
    assert (raw / "trn_mat.pkl").exists()  # files fetched before the bad one stay, verified
    with pytest.raises(DatasetError, match="not verified; run the fetch step"):
        prepare(card, raw, tmp_path / "canonical")
    assert not (tmp_path / "canonical").exists()


def test_tampered_file_in_place_is_replaced(toy):
    data, sums, files, tmp_path = toy
    card = _card(tmp_path, data, sums, "http://127.0.0.1:9/unreachable")
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror"))
    (tmp_path / "raw" / "tst_mat.pkl").write_bytes(b"tampered")
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror"))
    assert (tmp_path / "raw" / "tst_mat.pkl").read_bytes() == files["toy/tst_mat.pkl"]


def test_mirror_as_folder_and_as_url_prefix(toy):
    data, sums, files, tmp_path = toy
    card = _card(tmp_path, data, sums, "http://127.0.0.1:9/unreachable")
    assert len(fetch_files(card.files, tmp_path / "raw1", card.name, mirror=str(tmp_path / "mirror"))) == 3
    server = FileServer(files)
    with server.running():
        assert len(fetch_files(card.files, tmp_path / "raw2", card.name, mirror=server.url)) == 3
    assert {p for p, _ in server.requests} == set(files)


def test_offline_without_mirror_names_url_and_mirror_option(toy):
    data, sums, _, tmp_path = toy
    card = _card(tmp_path, data, sums, "http://127.0.0.1:9/toy")  # port 9: connection refused
    with pytest.raises(FetchError, match=r"http://127.0.0.1:9/toy/trn_mat.pkl.*mirror option"):
        fetch_files(card.files, tmp_path / "raw", card.name, retries=1, backoff=0)
    assert not any((tmp_path / "raw").iterdir())


def test_statistics_mismatch_is_a_hard_error(toy):
    data, sums, _, tmp_path = toy
    card_file = write_card(tmp_path / "cards", data, sums, "http://x.invalid")
    card_file.write_text(card_file.read_text().replace(f"train: {len(data.train)}", f"train: {len(data.train) + 1}"))
    load_card.cache_clear()
    card = load_card("toy", tmp_path / "cards")
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror"))
    with pytest.raises(DatasetError, match=rf"train: card {len(data.train) + 1} vs data {len(data.train)}"):
        prepare(card, tmp_path / "raw", tmp_path / "canonical")
    assert not (tmp_path / "canonical").exists()


def test_unknown_and_invalid_cards_are_clear_errors(tmp_path):
    load_card.cache_clear()
    with pytest.raises(CardError, match="no dataset card for 'nope'.*known datasets"):
        load_card("nope", tmp_path)
    (tmp_path / "bad.yaml").write_text("name: bad\ntitle: x\n")
    with pytest.raises(CardError, match="invalid dataset card"):
        load_card("bad", tmp_path)


def test_shipped_cards_are_valid():
    load_card.cache_clear()
    for name in ("amazon", "yelp", "movie", "ml-100k"):
        card = load_card(name)
        assert card.stats.users > 0 and len(card.files) >= 1


def test_random_split_proportions_and_determinism():
    parts = random_split(1000, [3, 1, 1], seed=7)
    assert np.bincount(parts).tolist() == [600, 200, 200]
    assert np.array_equal(parts, random_split(1000, [3, 1, 1], seed=7))
    assert not np.array_equal(parts, random_split(1000, [3, 1, 1], seed=8))


def test_a_changed_canonical_file_is_detected(toy):
    data, sums, _, tmp_path = toy
    card = _card(tmp_path, data, sums, "http://x.invalid")
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror"))
    prepare(card, tmp_path / "raw", tmp_path / "canonical")
    with open(tmp_path / "canonical" / "interactions.npz", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(DatasetError, match="changed since it was prepared"):
        load_canonical(tmp_path / "canonical", card)


def test_a_pickle_that_is_not_a_matrix_is_refused(toy):
    data, sums, _, tmp_path = toy
    mirror = tmp_path / "mirror" / "toy"
    (mirror / "val_mat.pkl").write_bytes(pickle.dumps(np.arange(5)))
    sums["val_mat.pkl"] = hashlib.sha256((mirror / "val_mat.pkl").read_bytes()).hexdigest()
    card = _card(tmp_path, data, sums, "http://x.invalid")
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror"))
    with pytest.raises(DatasetError, match="expected a scipy sparse matrix, found ndarray"):
        prepare(card, tmp_path / "raw", tmp_path / "canonical")
    assert not (tmp_path / "canonical").exists()


@pytest.mark.parametrize("bad", ["../escape.pkl", "/etc/passwd", "sub/../../x.pkl", "..", "a\\b.pkl", ""])
def test_a_card_file_path_cannot_leave_the_dataset_folder(toy, bad):
    data, sums, _, tmp_path = toy
    write_card(tmp_path / "cards", data, {bad: "0" * 64}, "http://x.invalid")
    load_card.cache_clear()
    with pytest.raises(CardError, match="not a plain file name"):
        load_card("toy", tmp_path / "cards")
    assert not any(tmp_path.parent.glob("escape.pkl"))


@pytest.mark.parametrize(
    "text",
    [
        {"available": True, "shipped_cache": {"path": "../../outside.jsonl.gz", "sha256": "0" * 64, "model": "m"}},
        {"available": True, "shipped_cache": {"path": "/etc/passwd", "sha256": "0" * 64, "model": "m"}},
        {
            "available": True,
            "source": "rlmrec_profiles",
            "files": [{"path": "data.zip", "url": "http://x.invalid/data.zip", "sha256": "0" * 64}],
            "members": {
                "user_profiles": "../../usr.pkl",
                "item_profiles": "data/itm.pkl",
                "user_embeddings": "data/u.pkl",
                "item_embeddings": "data/i.pkl",
            },
        },
    ],
)
def test_card_text_paths_and_archive_members_cannot_leave_their_folder(toy, text):
    data, sums, _, tmp_path = toy
    write_card(tmp_path / "cards", data, sums, "http://x.invalid", text=text)
    load_card.cache_clear()
    with pytest.raises(CardError, match="is not a safe relative path"):
        load_card("toy", tmp_path / "cards")


def test_a_conversion_member_prefix_cannot_leave_the_archive(toy):
    data, sums, _, tmp_path = toy
    write_card(tmp_path / "cards", data, sums, "http://x.invalid", conversion_params={"member_prefix": "../x"})
    load_card.cache_clear()
    with pytest.raises(CardError, match="'../x' is not a safe relative path"):
        load_card("toy", tmp_path / "cards")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/tmp/x", "Toy", ""])
def test_a_dataset_name_is_never_a_path(name, tmp_path):
    load_card.cache_clear()
    with pytest.raises(CardError, match="is not a dataset name"):
        load_card(name, tmp_path)


def test_a_mirror_cannot_be_escaped_through_the_dataset_name(toy):
    from recrepro.data.fetch import _mirror_location

    data, sums, _, tmp_path = toy
    card = _card(tmp_path, data, sums, "http://x.invalid")
    with pytest.raises(ValueError, match="points outside"):
        _mirror_location(str(tmp_path / "mirror"), "../..", card.files[0])


@pytest.mark.parametrize("part", ["val", "test"])
def test_an_empty_split_is_an_error_at_prepare_time(toy, part):
    data, _, _, tmp_path = toy
    published = InteractionData(data.name, data.n_users, data.n_items, data.train, data.val, data.test)
    setattr(published, part, data.part(part)[:0])  # the published files hold no interaction for this part
    sums = write_irllrec_dataset(published, tmp_path / "mirror2" / "toy")
    card = _card(tmp_path, data, sums, "http://x.invalid")  # the card describes the intended, non-empty split
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror2"))
    with pytest.raises(DatasetError, match=rf"the {part} split\(s\) hold no interaction"):
        prepare(card, tmp_path / "raw", tmp_path / "canonical")
    assert not (tmp_path / "canonical").exists()


def test_users_without_training_data_that_the_card_does_not_declare_are_an_error(toy):
    data, sums, _, tmp_path = toy
    stats = {**data.stats(), "users_in_train": data.stats()["users_in_train"] + 1}
    card_file = write_card(tmp_path / "cards", data, sums, "http://x.invalid")
    import yaml

    card_yaml = yaml.safe_load(card_file.read_text())
    card_yaml["stats"] = stats
    card_file.write_text(yaml.safe_dump(card_yaml))
    load_card.cache_clear()
    card = load_card("toy", tmp_path / "cards")
    fetch_files(card.files, tmp_path / "raw", card.name, mirror=str(tmp_path / "mirror"))
    with pytest.raises(DatasetError, match=r"users_in_train: card \d+ vs data \d+"):
        prepare(card, tmp_path / "raw", tmp_path / "canonical")
