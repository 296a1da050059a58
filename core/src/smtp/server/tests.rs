//! Session tests through the public API (arrange, act, assert).
