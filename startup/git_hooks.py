"""The pre-push hook the startup hook puts into the user's clone: `mlops-ide dag check`
on the DAG files a push changes, before they leave, for a remote outside the platform (it
answers in the user's terminal, with VS Code's file:line links). A push to the platform's
own remote is left to the remote's check (the same files, in its sandbox, from a warm
process): the hook says so and lets git go on.

Installed only where there is no pre-push hook, or ours: a hook the user wrote is theirs.
It lives in .git/hooks, which no commit can change: a teammate's push cannot alter it.
"""

from __future__ import annotations

from pathlib import Path

MARK = "# mlops-ide pre-push hook"
PRE_PUSH = f"""#!/bin/sh
{MARK}: checks the DAG files this push changes (`mlops-ide dag check`).
# Skip it once with `git push --no-verify`. Rewritten at each server start while this line
# above stays; delete the file (or that line) to keep a hook of your own.
if ! command -v mlops-ide >/dev/null 2>&1; then
  echo "mlops-ide: no DAG check before this push (mlops-ide is not on PATH)" >&2
  exit 0
fi
exec mlops-ide dag check --pre-push "$@"
"""


def install_pre_push(repository: Path) -> bool:
    """Write the hook unless a hook of the user's own is there; True if ours is in place."""
    hook = repository / ".git" / "hooks" / "pre-push"
    if hook.is_symlink() or (hook.exists() and MARK not in hook.read_text(errors="replace")):
        return False
    hook.parent.mkdir(parents=True, exist_ok=True)
    if not hook.exists() or hook.read_text() != PRE_PUSH:
        hook.write_text(PRE_PUSH)
    hook.chmod(0o755)
    return True
