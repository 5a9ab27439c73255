"""`bench/run.py --profile-2p` summarises py-spy's collapsed stacks per function."""

from bench.run import stack_summary

COLLAPSED = """\
<module> (run.py:10);main (flows/pipeline.py:20);fold (metrics/bucket.py:419) 30
<module> (run.py:10);main (flows/pipeline.py:21);fold (metrics/bucket.py:440) 10
<module> (run.py:10);main (flows/pipeline.py:22) 5
<module> (run.py:10);rec (a.py:1);rec (a.py:2) 5
"""


def test_own_and_total_samples_per_function_ignore_line_numbers() -> None:
    own, total, samples = stack_summary(COLLAPSED)

    assert samples == 50
    assert own == {"fold (metrics/bucket.py)": 40, "main (flows/pipeline.py)": 5,
                   "rec (a.py)": 5}
    assert total["<module> (run.py)"] == 50
    assert total["main (flows/pipeline.py)"] == 45
    # A recursive function counts once per sample on the stack.
    assert total["rec (a.py)"] == 5


def test_empty_input_counts_no_function() -> None:
    own, total, samples = stack_summary("")

    assert (own, total) == ({}, {})
    assert samples == 1  # so shares divide safely
