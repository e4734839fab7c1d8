"""The selection meeting's outputs: the offline HTML panel pack and the Excel workbook.

`build_report(con, run_id, out_dir, config)` writes `pack.html` and `pack.xlsx` for one stored
run, reading only the warehouse (the run's register row, its scores table, cohort members,
movement, release watch, rejects, loads); `iom run` calls it for every completed run and
`iom report --run RUN` calls it again for an earlier one.
"""
