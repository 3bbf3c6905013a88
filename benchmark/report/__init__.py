"""What the store's rows become for a reader: leaderboards (markdown and rich), relative scores,
statistics, plots, sample grids, the tuning page, the papers' reported numbers and provenance."""
