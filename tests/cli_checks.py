"""The contract every error path of the CLI keeps: exit 2, one line on stderr, no traceback."""

import subprocess
import sys


def assert_one_line_error(result, expect):
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.count("\n") == 0, f"more than one line: {err!r}"
    assert "Traceback" not in result.output
    assert err.startswith("cond: error: ")
    for needle in expect:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def run_cli_without(packages, argv):
    """Run ``cond ARGV`` in a fresh interpreter where importing any of ``packages`` fails,
    as on a machine without that optional dependency; returns the CompletedProcess."""
    code = ("import sys, importlib.machinery\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        return importlib.machinery.ModuleSpec(name, None) if name.split('.')[0] in {tuple(packages)!r} "
            "else None\n"
            "sys.meta_path.insert(0, Block())\n"
            "from cond.cli.main import main\n"
            f"sys.argv = ['cond', *{list(argv)!r}]\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
