"""Options: one table that gives the schema, the typed Options, the web form and the stores."""
