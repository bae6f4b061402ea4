"""The contract every error path of the CLI keeps: exit 2, one line on stderr, no traceback."""


def assert_one_line_error(result, expect):
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.count("\n") == 0, f"more than one line: {err!r}"
    assert "Traceback" not in result.output
    assert err.startswith("cond: error: ")
    for needle in expect:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err
