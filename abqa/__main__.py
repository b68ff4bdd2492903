from abqa.cli import main

raise SystemExit(main())
