from ._shipper import main

main()
