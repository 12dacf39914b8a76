"""leakharness: find, compare and report memory errors in C and Go programs that use OpenSSL.

The stages, each a module, data flowing one way:
catalog -> generate -> build -> run -> parse -> judge -> report.
"""

__version__ = "0.1.0"
