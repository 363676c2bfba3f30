//! pol runtime: loads compiled pol objects (aya), attaches them, runs packets through them.
