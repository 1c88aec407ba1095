# demo_tiny plus a hook that records, per rank, the images it trained on and
# a checksum of its parameters (tests/test_tools/rank_probe.py).
_base_ = ['./demo_tiny.py']

custom_imports = dict(imports=['cait_mm', 'rank_probe'])
custom_hooks = [dict(type='RankProbeHook')]
