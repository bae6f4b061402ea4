"""Running cond as a user would on a machine without an optional package."""

import subprocess
import sys


def run_cli_without(packages, argv):
    """Run ``cond ARGV`` in a fresh interpreter where importing any of ``packages`` fails,
    as on a machine without that optional dependency; returns the CompletedProcess."""
    code = (
        "import sys, importlib.machinery\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        return importlib.machinery.ModuleSpec(name, None) if name.split('.')[0] in {tuple(packages)!r} "
        "else None\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cond.cli.main import main\n"
        f"sys.argv = ['cond', *{list(argv)!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
