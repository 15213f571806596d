# The two commands of the README.
.PHONY: demo test

# Set up, crawl the local documentation corpus into the embedded store, and serve the page.
demo:
	scripts/demo.sh

# Set up everything the tests need (Debian packages, venv, Elasticsearch) and run them.
test:
	scripts/test.sh $(ARGS)
