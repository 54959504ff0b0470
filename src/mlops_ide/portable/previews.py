"""Previews: a branch `preview/<person>/<topic>` runs as its own copy of the repository's DAGs,
under ids that name it (`cnn_skin_cancer_workflow__alice_lr`), paused, until the branch goes.

Airflow reads a fixed list of DAG bundles (its configuration); the platform gives it
MLOPS_IDE_PREVIEW_SLOTS more, `preview-1` ... `preview-N` (mlops_ide/in_airflow/preview_bundle.py),
and this module's registry says which branch each slot holds. Whoever learns of a preview
branch (the local remote's post-receive hook through the push check, or the watch of a
remote outside the platform) assigns it a slot; Airflow's bundle of that slot then tracks the
branch, and its DAGs are renamed, tagged and paused as they are parsed (preview_policy.py).

    {"previews": [{"slot": "preview-1", "branch": "preview/alice/lr", "person": "alice",
                   "topic": "lr", "commit": "<40 hex>", "pushed_by": "alice",
                   "created": 1733360000.0, "pushed": 1733360000.0}]}

The registry holds branch names and people's names (what every Airflow user sees in the
DAGs' tags), never a secret: every account reads it, only the pipeline's writes it.
Standard library only: the git hooks, Airflow's processes and user servers import it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_ide.portable import push_status

BRANCH_PREFIX = "preview/"
REF_PREFIX = "refs/heads/" + BRANCH_PREFIX
SLOT_PREFIX = "preview-"  # + 1..N: the slots' bundle names
ENV = "MLOPS_IDE_PREVIEWS_FILE"  # where Airflow's processes and user servers find the registry
PERSON = re.compile(r"[a-z0-9][a-z0-9._-]{0,38}")  # hub names (local and GitHub logins, lowercased)
# No `_` in a topic: `__<person>_<topic>` then names one preview only (split at the last `_`).
TOPIC = re.compile(r"[a-z0-9][a-z0-9.-]{0,31}")
DAG_ID_LIMIT = 250  # Airflow's
MAX_BYTES = 1024 * 1024
COMMIT = re.compile(r"[0-9a-f]{40}")
SLOT_NUMBER = re.compile(r"[1-9][0-9]*")  # ASCII digits only (str.isdigit takes `١` and `²`)


class BadPreview(ValueError):
    """A preview branch the platform cannot run; the message says what to push instead."""


@dataclass(frozen=True)
class Preview:
    person: str
    topic: str

    @property
    def branch(self) -> str:
        return f"{BRANCH_PREFIX}{self.person}/{self.topic}"

    @property
    def suffix(self) -> str:
        return f"__{self.person}_{self.topic}"

    @property
    def experiment(self) -> str:
        """The MLflow experiment its runs record to (the gate keeps `champion` from them)."""
        return self.branch

    def dag_id(self, original: str) -> str:
        """`<original>__<person>_<topic>`, one preview's DAG only: the topic has no `_` (it ends
        at the last one), and an original with no `__` that does not end with `_` ends at the
        first `__`. Else `train` of preview/daily__alice/lr and `train__daily` of
        preview/alice/lr would both be `train__daily__alice_lr`."""
        if "__" in original or original.endswith("_"):
            raise BadPreview(
                f"DAG id {original!r} has `__` or ends with `_`: a preview renames a DAG to "
                f"<id>{self.suffix}, which another preview's DAG could take too; rename the DAG "
                "without `__` (and no `_` at its end) to preview it"
            )
        renamed = original + self.suffix
        if len(renamed) > DAG_ID_LIMIT:
            raise BadPreview(
                f"{original}{self.suffix} is over Airflow's {DAG_ID_LIMIT} characters: push a shorter topic"
            )
        return renamed


def is_preview_branch(branch: str) -> bool:
    return branch.startswith(BRANCH_PREFIX)


def parse_branch(branch: str) -> Preview:
    """The preview a branch under `preview/` names; BadPreview says what to push instead."""
    example = f"git push origin HEAD:{BRANCH_PREFIX}<your hub name>/<topic>"
    parts = branch.removeprefix(BRANCH_PREFIX).split("/")
    if not is_preview_branch(branch) or len(parts) != 2:
        raise BadPreview(f"{branch} is not a preview branch: {example}")
    person, topic = parts
    if not PERSON.fullmatch(person):
        raise BadPreview(f"{person!r} in {branch} is not a hub name: {example}")
    if not TOPIC.fullmatch(topic):
        raise BadPreview(
            f"{topic!r} in {branch} is not a topic: lowercase letters, digits, `.` and `-`, "
            f"up to 32 characters, e.g. {BRANCH_PREFIX}{person}/lr-sweep"
        )
    return Preview(person, topic)


def slot_names(count: int) -> list[str]:
    return [f"{SLOT_PREFIX}{number}" for number in range(1, count + 1)]


def is_slot(bundle_name: str) -> bool:
    number = bundle_name.removeprefix(SLOT_PREFIX)
    return bundle_name.startswith(SLOT_PREFIX) and SLOT_NUMBER.fullmatch(number) is not None


@dataclass(frozen=True)
class Entry:
    """One preview the platform runs: its slot (Airflow's bundle), its branch and its last push."""

    slot: str
    branch: str
    person: str
    topic: str
    commit: str
    pushed_by: str
    created: float
    pushed: float

    @property
    def preview(self) -> Preview:
        return Preview(self.person, self.topic)


def read(path: Path) -> list[Entry]:
    """The previews at `path` (none if it does not exist yet); ValueError if it is not a registry."""
    try:
        with open(path, "rb") as source:
            raw = source.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return []
    if len(raw) > MAX_BYTES:
        raise ValueError(f"{path} is over {MAX_BYTES} bytes: it is not the previews' registry")
    try:
        items = json.loads(raw)["previews"]
        entries = [Entry(**item) for item in items]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not the previews' registry ({error})") from None
    for entry in entries:
        preview = parse_branch(entry.branch)
        if (preview.person, preview.topic) != (entry.person, entry.topic) or not is_slot(entry.slot):
            raise ValueError(f"{path} is not the previews' registry (entry {entry.branch} disagrees)")
    return entries


def write(path: Path, entries: list[Entry]) -> None:
    """Atomically; readable by every account."""
    push_status.write(path, {"previews": [asdict(entry) for entry in entries]})


def in_slot(entries: list[Entry], slot: str) -> Entry | None:
    return next((entry for entry in entries if entry.slot == slot), None)


def of_branch(entries: list[Entry], branch: str) -> Entry | None:
    return next((entry for entry in entries if entry.branch == branch), None)


def of_person(entries: list[Entry], person: str) -> list[Entry]:
    return [entry for entry in entries if entry.person == person]


class NoSlot(Exception):
    """Every slot is taken, or the person has their limit: the message lists what to delete."""


def pushed(
    entries: list[Entry],
    branch: str,
    commit: str,
    pushed_by: str,
    slots: int,
    per_person: int,
    now: float | None = None,
) -> tuple[list[Entry], Entry]:
    """The registry after a push of `commit` to the preview `branch`: its entry moved on, or a
    new one in the first free slot. NoSlot when the person has `per_person` previews or all
    `slots` are taken; BadPreview when the branch is not a preview's."""
    now = time.time() if now is None else now
    if not COMMIT.fullmatch(commit):
        raise ValueError(f"not a commit: {commit!r}")
    preview = parse_branch(branch)
    known = of_branch(entries, branch)
    if known is not None:
        moved = Entry(**{**asdict(known), "commit": commit, "pushed_by": pushed_by, "pushed": now})
        return [moved if entry is known else entry for entry in entries], moved
    own = of_person(entries, preview.person)
    if len(own) >= per_person:
        raise NoSlot(limit_message(own, per_person))
    taken = {entry.slot for entry in entries}
    free = [slot for slot in slot_names(slots) if slot not in taken]
    if not free:
        raise NoSlot(
            f"all {slots} preview slots are taken ({', '.join(entry.branch for entry in entries)}): "
            "ask a teammate to delete one, or the operator to raise MLOPS_IDE_PREVIEW_SLOTS"
        )
    entry = Entry(free[0], branch, preview.person, preview.topic, commit, pushed_by, now, now)
    return [*entries, entry], entry


def limit_message(own: list[Entry], per_person: int) -> str:
    listed = ", ".join(entry.branch for entry in own)
    return (
        f"you have {len(own)} previews, the limit is {per_person} ({listed}): delete one with "
        f"`git push origin :{own[0].branch}`"
    )


def removed(entries: list[Entry], branch: str) -> list[Entry]:
    return [entry for entry in entries if entry.branch != branch]


def reconciled(entries: list[Entry], branches: set[str], listed: float) -> list[Entry]:
    """The registry without the previews whose branch the remote no longer has: `branches`,
    its preview branches as listed at `listed` (the hook's clock, the push check's machine).
    An entry pushed after that listing stays: the list is older than its push (reports of two
    pushes may arrive out of order)."""
    return [entry for entry in entries if entry.branch in branches or entry.pushed > listed]


def expired(entries: list[Entry], max_age_days: float, now: float | None = None) -> list[Entry]:
    """The previews nobody pushed to for `max_age_days`."""
    now = time.time() if now is None else now
    return [entry for entry in entries if now - entry.pushed > max_age_days * 86400]
