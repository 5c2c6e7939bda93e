"""Planning: a goal (tokens by a deadline, a traffic peak under an SLO, a year of demand) searched
over GPUs, counts, layouts, engines and replicas, each candidate simulated by the training or
serving simulator and priced from the catalog. One module per question."""
