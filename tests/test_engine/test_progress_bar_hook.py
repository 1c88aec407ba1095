"""ProgressBarHook: one bar per evaluation loop, on stderr, finished with
the loop."""
from types import SimpleNamespace

from cait_mm.engine import ProgressBarHook


def test_a_bar_per_loop_on_stderr(capsys):
    runner = SimpleNamespace(test_dataloader=[0] * 3, val_dataloader=[0] * 2)
    hook = ProgressBarHook(title='evaluating ATME')
    hook.before_test_epoch(runner)
    for i in range(3):
        hook.after_test_iter(runner, i)
    hook.after_test_epoch(runner)
    out = capsys.readouterr()
    assert out.out == ''  # stdout is the tools' tables
    assert out.err.startswith('evaluating ATME\n')
    assert '3/3' in out.err and out.err.endswith('\n')

    hook.before_val_epoch(runner)
    hook.after_val_iter(runner, 0)
    hook.after_val_epoch(runner)
    err = capsys.readouterr().err
    assert '1/2' in err and '2/2' not in err
    # after the loop the bar is closed: late calls draw nothing
    hook.after_val_iter(runner, 1)
    assert capsys.readouterr().err == ''
