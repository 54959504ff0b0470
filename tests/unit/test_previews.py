"""Previews' names and registry (mlops_ide/portable/previews.py): a branch names one preview,
one DAG id per preview, slots given and freed, the limits refused with what to do."""

from __future__ import annotations

import json

import pytest

from mlops_ide.portable import previews
from mlops_ide.portable.previews import BadPreview, NoSlot

A = "a" * 40
B = "b" * 40
DAY = 86400


def test_a_preview_branch_names_its_person_topic_and_dag_ids():
    preview = previews.parse_branch("preview/alice/lr")
    assert (preview.person, preview.topic) == ("alice", "lr")
    assert preview.dag_id("cnn_skin_cancer_workflow") == "cnn_skin_cancer_workflow__alice_lr"
    assert preview.experiment == "preview/alice/lr"
    assert preview.branch == "preview/alice/lr"


@pytest.mark.parametrize(
    "branch",
    [
        "preview/alice",
        "preview/alice/a/b",
        "preview/alice/../x",
        "preview/Alice/lr",
        "preview/alice/LR",
        "preview/alice/l_r",  # `_` would let two previews share a suffix
        "preview//lr",
        "preview/alice/",
        "preview/alice/%2e%2e",
        "preview/alice/" + "x" * 33,
        "main",
        "previews/alice/lr",
    ],
)
def test_what_is_not_a_preview_branch_is_refused_with_an_example(branch):
    with pytest.raises(BadPreview, match="preview/"):
        previews.parse_branch(branch)


def test_two_people_and_two_topics_never_share_a_dag_id():
    names = ["alice/lr", "alice_l/r", "alice/l-r", "al/ice-lr", "alice.l/r", "bob/lr"]
    suffixes = {previews.parse_branch("preview/" + name).suffix for name in names}
    assert len(suffixes) == len(names)


def test_renamed_dag_ids_never_meet_so_an_original_with_a_double_underscore_is_refused():
    """`train` of preview/daily__alice/lr and `train__daily` of preview/alice/lr would both be
    `train__daily__alice_lr`: the second is refused, naming the rule."""
    assert previews.parse_branch("preview/daily__alice/lr").dag_id("train") == "train__daily__alice_lr"
    for original in ("train__daily", "train_", "a__"):
        with pytest.raises(BadPreview, match="has `__` or ends with `_`: a preview renames"):
            previews.parse_branch("preview/alice/lr").dag_id(original)
    branches = ["preview/alice/lr", "preview/daily__alice/lr", "preview/a_/b", "preview/a/b"]
    branches += ["preview/a__b/c", "preview/a_b/c"]
    originals = ["train", "train_daily", "t_r_a_i_n", "x", "x_y"]
    renamed = [previews.parse_branch(b).dag_id(o) for b in branches for o in originals]
    assert len(set(renamed)) == len(renamed)


def test_a_dag_id_over_airflows_limit_is_refused():
    with pytest.raises(BadPreview, match="250"):
        previews.parse_branch("preview/alice/lr").dag_id("x" * 246)


def test_a_push_takes_the_first_free_slot_and_a_second_push_moves_it(tmp_path):
    entries, first = previews.pushed([], "preview/alice/lr", A, "alice", slots=2, per_person=3, now=10)
    entries, second = previews.pushed(entries, "preview/bob/lr", A, "bob", slots=2, per_person=3, now=11)
    assert (first.slot, second.slot) == ("preview-1", "preview-2")
    entries, moved = previews.pushed(entries, "preview/alice/lr", B, "admin", slots=2, per_person=3, now=12)
    assert (moved.slot, moved.commit, moved.pushed_by, moved.created, moved.pushed) == (
        "preview-1",
        B,
        "admin",
        10,
        12,
    )
    path = tmp_path / "previews.json"
    previews.write(path, entries)
    assert previews.read(path) == entries
    assert previews.in_slot(entries, "preview-2").branch == "preview/bob/lr"


def test_a_freed_slot_is_given_again():
    entries, _ = previews.pushed([], "preview/alice/lr", A, "alice", slots=1, per_person=3)
    entries = previews.removed(entries, "preview/alice/lr")
    entries, entry = previews.pushed(entries, "preview/bob/x", A, "bob", slots=1, per_person=3)
    assert entry.slot == "preview-1" and len(entries) == 1


def test_the_push_beyond_ones_limit_lists_ones_previews_and_how_to_delete_one():
    entries: list = []
    for topic in ("a", "b", "c"):
        entries, _ = previews.pushed(entries, f"preview/alice/{topic}", A, "alice", slots=6, per_person=3)
    with pytest.raises(NoSlot) as refused:
        previews.pushed(entries, "preview/alice/d", A, "alice", slots=6, per_person=3)
    message = str(refused.value)
    assert "preview/alice/a, preview/alice/b, preview/alice/c" in message
    assert "git push origin :preview/alice/a" in message
    previews.pushed(entries, "preview/bob/d", A, "bob", slots=6, per_person=3)  # others are not limited


def test_when_every_slot_is_taken_the_push_names_them_and_the_setting():
    entries, _ = previews.pushed([], "preview/alice/a", A, "alice", slots=1, per_person=3)
    taken = r"all 1 preview slots are taken \(preview/alice/a\).*MLOPS_IDE_PREVIEW_SLOTS"
    with pytest.raises(NoSlot, match=taken):
        previews.pushed(entries, "preview/bob/a", A, "bob", slots=1, per_person=3)


def test_only_previews_untouched_for_the_days_given_expire():
    entries, _ = previews.pushed([], "preview/alice/old", A, "alice", slots=6, per_person=3, now=0)
    entries, _ = previews.pushed(entries, "preview/alice/new", A, "alice", slots=6, per_person=3, now=6 * DAY)
    assert [entry.branch for entry in previews.expired(entries, 7, now=7 * DAY + 1)] == ["preview/alice/old"]


def test_a_registry_that_is_missing_is_empty_and_one_that_is_not_ours_is_refused(tmp_path):
    path = tmp_path / "previews.json"
    assert previews.read(path) == []
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not the previews' registry"):
        previews.read(path)
    entries, _ = previews.pushed([], "preview/alice/lr", A, "alice", slots=6, per_person=3)
    previews.write(path, entries)
    forged = json.loads(path.read_text())
    forged["previews"][0]["person"] = "bob"  # the entry's person must be the branch's
    path.write_text(json.dumps(forged))
    with pytest.raises(ValueError, match="disagrees"):
        previews.read(path)
    path.write_text(" " * (previews.MAX_BYTES + 1))
    with pytest.raises(ValueError, match="bytes"):
        previews.read(path)


def test_a_commit_must_be_a_full_object_name():
    with pytest.raises(ValueError, match="commit"):
        previews.pushed([], "preview/alice/lr", "HEAD", "alice", slots=6, per_person=3)


def test_slots_are_named_for_airflows_bundles():
    assert previews.slot_names(3) == ["preview-1", "preview-2", "preview-3"]
    assert previews.is_slot("preview-12") and not previews.is_slot("preview-01")
    assert not previews.is_slot("pipelines") and not previews.is_slot("preview-")
    # digits of other scripts, superscripts, signs and spaces are not a slot's number
    for name in ("preview-\u0661", "preview-\u00b2", "preview-+1", "preview- 1", "preview-1\n"):
        assert not previews.is_slot(name), name


def test_reconciling_drops_the_previews_whose_branch_is_gone_but_not_one_pushed_after_the_list():
    entries, _ = previews.pushed([], "preview/alice/gone", A, "alice", slots=6, per_person=3, now=10)
    entries, _ = previews.pushed(entries, "preview/alice/kept", A, "alice", slots=6, per_person=3, now=10)
    entries, _ = previews.pushed(entries, "preview/alice/newer", A, "alice", slots=6, per_person=3, now=30)
    left = previews.reconciled(entries, {"preview/alice/kept"}, listed=20)
    assert [entry.branch for entry in left] == ["preview/alice/kept", "preview/alice/newer"]
