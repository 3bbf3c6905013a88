"""What lasts between runs: the SQLite result store (`results`), tuning studies (`studies`), run
leases between drivers (`leases`) and the code provenance recorded in each row (`provenance`)."""
