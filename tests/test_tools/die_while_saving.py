"""``python tests/test_tools/die_while_saving.py N tools/train.py ARGS``:
run the tool, and on its N-th checkpoint write, write half of the file and
die at once (``os._exit``), as a killed job does; every other file is
written as usual."""
import os
import runpy
import sys

from mmengine.fileio.backends import LocalBackend

DIE_AT = int(sys.argv[1])
_put = LocalBackend.put
_writes = []


def put(self, obj, filepath):
    if str(filepath).endswith(('.pth', '.pth.partial')):
        _writes.append(filepath)
        if len(_writes) == DIE_AT:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            os._exit(9)
    return _put(self, obj, filepath)


LocalBackend.put = put
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
