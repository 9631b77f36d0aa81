"""The live catalog: catalog events, the worker that keeps every model version's index equal to
what they describe, and how embedded server processes follow its writes."""
