"""`saliq bench`: resolving a model (checkpoint, architecture, ONNX, engine), planning the
backends, parity, latency, memory and stage timings, the report. It lives in the training layer
because checkpoints and architectures need torch and ``saliq.train``; the runtime pieces it uses
(runners, comparator, timer, report, machine description, plots) are ``saliq.bench``."""
