from cond.cli.main import main

main()
