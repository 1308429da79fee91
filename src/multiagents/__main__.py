from multiagents.cli import main

main()
