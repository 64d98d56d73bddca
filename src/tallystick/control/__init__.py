"""The control plane: which streams receive which events, at what sample rate, until when.

So far the pure cores (no I/O): ``sampling`` (deterministic, nested sampling decisions),
``curation`` (rules that drop events) and ``routing`` (event names to streams). The store, the
collector's use of them and the interfaces are issue 5's remaining work; see
docs/dev/control-plane-notes.md.
"""
