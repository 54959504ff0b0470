"""A preview slot as a DAG bundle: Airflow's GitDagBundle on the pipeline's repository, whose
branch is the one the previews' registry (portable/previews.py, MLOPS_IDE_PREVIEWS_FILE) names
for its slot, read again at each refresh. The bundle's name is its slot (`preview-3`).

Airflow reads its bundle list once per process, so the platform configures the slots up front
(machine/components/airflow.py, deploy/airflow/values.yaml) and a new preview takes a free
slot within one refresh (a few seconds), with no restart. A free slot is an empty folder with
no version: Airflow deactivates the DAGs of the preview it held, and their runs stay readable.
With a version (a task's run, or a callback) it is GitDagBundle unchanged: that commit.
preview_policy.py renames the DAGs parsed from it after the slot's entry.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.dag_processing.bundles.base import BaseDagBundle
from airflow.providers.git.bundles.git import GitDagBundle
from git.exc import GitCommandError

from mlops_ide.in_airflow import preview_policy
from mlops_ide.portable import previews

# The tracking clone is made at the clone's own HEAD and moved to the slot's branch by
# GitDagBundle.refresh's reset to origin/<branch>: a reset works whatever the clone held before
# (another preview's branch), where GitDagBundle's checkout of a branch the clone has not
# fetched yet fails (apache/airflow#71388), e.g. after a restart when the slot changed hands.
CLONE_HEAD = "HEAD"
# The slot checks out the remote-tracking ref by its full name: GitDagBundle.refresh falls back
# to resetting to the bare name when origin/<branch> is missing, and git resolves a tag
# `preview/alice/lr` first. Both of the bundle's fetches prune (remote.origin.prune), so a
# deleted branch's ref goes with it, and its slot shows free, never the branch's last commit.
TRACKING = "refs/remotes/origin/"


class PreviewSlotBundle(GitDagBundle):
    def __init__(self, **kwargs) -> None:
        if "tracking_ref" in kwargs:
            raise ValueError(
                f"preview slot {kwargs.get('name')}: no tracking_ref, the previews' registry names its branch"
            )
        super().__init__(tracking_ref=CLONE_HEAD, **kwargs)
        if not previews.is_slot(self.name):
            raise ValueError(f"a preview slot's bundle is named preview-<number>, not {self.name!r}")
        self.entry: previews.Entry | None = None  # the preview the tracking checkout holds
        self.free_folder = self.base_dir / "free"  # what a free slot presents: nothing

    def registry_entry(self) -> previews.Entry | None:
        """The slot's entry now; ValueError (logged by Airflow, the checkout kept) when the
        registry is not set or broken: the policy refuses the slot's DAGs until it is mended."""
        return previews.in_slot(preview_policy.registry_entries(), self.name)

    def initialize(self) -> None:
        if self.version:
            super().initialize()
            return
        with self.lock():
            if self.registry_entry() is None:  # free: nothing to clone until a preview takes the slot
                self.present_free()
                BaseDagBundle.initialize(self)
                return
            super().initialize()  # clones at CLONE_HEAD, then self.refresh() moves to the branch

    def refresh(self) -> None:
        if self.version:
            super().refresh()  # GitDagBundle's refusal
            return
        with self.lock():
            entry = self.registry_entry()
            if entry is None:
                self.entry = None
                self.present_free()
                return
            if getattr(self, "repo", None) is None:  # free since the start: clone now
                self._initialize()  # GitDagBundle's clone, which calls this refresh again
                return
            self.prune_on_fetch()
            self.tracking_ref = TRACKING + entry.branch
            try:
                super().refresh()
            except GitCommandError:
                if self.has_ref(self.tracking_ref):
                    raise
                self.entry = None  # the registry names a branch the remote does not have
                self.present_free()
                return
            if self.repo.head.commit.hexsha != entry.commit and not self.run_recorded(entry):
                self.entry = None
                self.present_free()
                return
            if self.entry is not None and self.entry.branch != entry.branch:
                self.touch_files()
            self.entry = entry
            preview_policy.write_checked_out(self.base_dir, entry.branch, self.repo.head.commit.hexsha)

    def run_recorded(self, entry: previews.Entry) -> bool:
        """Check out the commit the registry records for the slot, not whatever the branch holds
        now: a push the platform did not let in (someone else's to this preview on a host where
        no hook of ours runs, or one still on its way to the registry) is not run as this
        preview. False when that commit is not on the remote's branch (rewritten since)."""
        try:
            on_branch = self.repo.is_ancestor(entry.commit, self.tracking_ref)
        except GitCommandError:  # not fetched: no branch of the remote has it
            on_branch = False
        if on_branch:
            self.repo.head.reset(entry.commit, index=True, working_tree=True)
        return on_branch

    def prune_on_fetch(self) -> None:
        """Both clones (the bare one and the tracking checkout) drop the refs of deleted branches
        at each fetch."""
        for repo in (self.bare_repo, self.repo):
            with repo.config_reader() as config:
                if config.get_value('remote "origin"', "prune", default="") == "true":
                    continue
            with repo.config_writer() as config:
                config.set_value('remote "origin"', "prune", "true")

    def has_ref(self, ref: str) -> bool:
        return self.repo.git.rev_parse("--verify", "--quiet", ref, with_exceptions=False) != ""

    def touch_files(self) -> None:
        """The slot changed hands at the same commit (two branches of one commit): Airflow sees
        no new version, so it would keep the DAGs under the last preview's names until it
        parses the files again; newer files are parsed again at once."""
        for path in Path(self.path).rglob("*.py"):
            os.utime(path, follow_symlinks=False)  # a link in the branch: the link, not its target

    def present_free(self) -> None:
        self.free_folder.mkdir(parents=True, exist_ok=True)
        preview_policy.write_checked_out(self.base_dir, None, None)

    @property
    def path(self) -> Path:
        if not self.version and self.entry is None:
            return self.free_folder
        return super().path

    def get_current_version(self):
        if not self.version and self.entry is None:
            return None  # free: Airflow sees a change from the last preview's commit, then none
        return super().get_current_version()

    def __repr__(self) -> str:
        return f"<PreviewSlotBundle(name={self.name!r}, entry={self.entry and self.entry.branch!r})>"
