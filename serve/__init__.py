"""Stage 2, serve: `abqa serve`, a real Triton Inference Server (nvidia-pytriton) on the model repository.

repository.py  config.pbtxt -> ArmModelConfig, and how many sessions and threads each arm gets (pure)
session.py     the ONNX Runtime session every path uses (server, benchmark, tests)
libpython.py   the python-backend stub must load this interpreter's libpython
server.py      the server process itself: bind, start, wait until every model answers, stop cleanly
process.py     start_server() -> ServerHandle: `abqa serve` as a child process, for tests and other stages;
               server_for_run(): the same for one run's --start-server
cli.py         `abqa serve`
"""
