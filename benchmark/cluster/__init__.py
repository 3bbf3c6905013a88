"""Where trials run: the one Ray session helper (`ray_session`), the driver's artifacts served to
other nodes (`artifacts`) and the embedded cluster's private scratch folder (`scratch`)."""
