"""Media for nodrute: G.711, RTP/RFC 4733, prompts, the IVR flow machine and the media engine.

Knows RTP and prompts, nothing of municipalities; imports ``sip`` for SDP only.
"""
