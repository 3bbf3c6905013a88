"""Grids: a grid file (`files`) becomes validated run specs (`plan`), estimated (`estimate`,
`memory`) and run as Ray trials (`runner`, `trial`, `progress`)."""
