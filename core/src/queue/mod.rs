//! The queue: the on-disk format of a queued message's envelope. The
//! front end owns the files; this module only encodes and decodes.
