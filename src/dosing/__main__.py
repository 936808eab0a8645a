from dosing.cli.app import main

main()
