"""Local mode's state folder (MLOPS_IDE_HOME), a module per concern: where things live
(layout), its secrets (credentials), the git remote (remote), the installed tools and a
user's commands (tools), the code every account imports (code_copy), the components'
accounts (accounts). Every step keeps what is already there."""
