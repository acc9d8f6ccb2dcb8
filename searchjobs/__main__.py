from searchjobs.cli import run

run()
