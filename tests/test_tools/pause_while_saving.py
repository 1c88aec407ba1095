"""``python tests/test_tools/pause_while_saving.py FLAG TOOL ARGS``: run the
tool, and before its first checkpoint write create ``FLAG.paused`` and wait
until ``FLAG`` exists: a run caught in the middle, for as long as a test
needs it there."""
import os
import runpy
import sys
import time

from mmengine.fileio.backends import LocalBackend

FLAG = sys.argv[1]
_put = LocalBackend.put
_paused = []


def put(self, obj, filepath):
    if not _paused and '.pth' in str(filepath):
        _paused.append(filepath)
        open(FLAG + '.paused', 'w').close()
        deadline = time.monotonic() + 600
        while not os.path.exists(FLAG) and time.monotonic() < deadline:
            time.sleep(0.05)
    return _put(self, obj, filepath)


LocalBackend.put = put
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
