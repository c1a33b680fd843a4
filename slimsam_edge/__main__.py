from slimsam_edge.cli.app import main

main()
