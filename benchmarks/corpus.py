"""A fixed corpus of request texts for the serving benchmarks: questions and passages of the
kind users embed, lengths varied (most 10-40 tokens, some past 128 and truncated there).
"""

QUESTIONS = [
    "How do I rotate the credentials of a service account?",
    "What is the refund policy for annual subscriptions?",
    "Why does my container restart every few minutes?",
    "Which regions offer the larger GPU instance types?",
    "How long does it take to process an international wire transfer?",
    "Can I change the billing address after an order has shipped?",
    "What happens to my data when I cancel the account?",
    "Is there a limit on the number of API requests per minute?",
    "How do I export the quarterly report as a spreadsheet?",
    "Where can I find the invoice for last month?",
    "What does error code 503 mean in the gateway logs?",
    "How do I add a second administrator to the workspace?",
    "Does the warranty cover accidental damage to the screen?",
    "Which version of the client library supports streaming responses?",
    "How can I reduce the cold start time of a serverless function?",
    "What is the difference between the standard and the premium support plans?",
    "How do I migrate a database from version 12 to version 15 without downtime?",
    "Why is the search index missing documents that were uploaded yesterday?",
    "Can two people edit the same document at the same time?",
    "What is the maximum size of a single file upload?",
    "How do I configure single sign-on with an external identity provider?",
    "When will the new pricing take effect for existing customers?",
    "Why are the nightly backups taking twice as long as last week?",
    "How do I book a meeting room for more than ten people?",
]

PASSAGES = [
    "Refunds for annual plans are prorated to the day and returned to the original payment "
    "method within ten business days.",
    "The load balancer marks a target unhealthy after three failed health checks and stops "
    "sending it traffic until two consecutive checks succeed.",
    "To rotate a key, create the new key first, deploy it to every client, confirm that no "
    "request still uses the old key, and only then revoke it.",
    "Our support team answers premium customers within one hour, around the clock, and "
    "standard customers within one business day.",
    "Backups are taken every night at two in the morning, kept for thirty days, and can be "
    "restored to any point in that window from the console or the command line tool.",
    "The quarterly report compares revenue, costs and margin by region with the same quarter "
    "of the previous year, and explains every change larger than five percent in a short "
    "note written by the regional finance lead.",
    "When a container exceeds its memory limit the kernel kills it and the orchestrator starts "
    "a new one; repeated restarts usually mean the limit is too low for the workload's peak, "
    "or that the application leaks memory under sustained load and should be profiled.",
    "Single sign-on is configured under workspace settings: upload the identity provider's "
    "metadata, map its groups to roles, test with one account, then enforce it for everyone. "
    "Accounts that existed before keep their history and are linked by their email address.",
    "The new pricing applies to new customers from the first of next month. Existing customers "
    "keep their current price until their next renewal date, and receive an email thirty days "
    "before that date with the new price and the options to change or cancel their plan.",
    "Search indexing runs continuously, but documents larger than fifty megabytes, encrypted "
    "files and files in formats the extractor does not recognise are skipped and listed in the "
    "indexing report. Re-uploading a skipped file after converting it to a supported format "
    "queues it again. Large batches uploaded at once may take several hours to appear in "
    "results, because the extractor processes them in the order they arrived and shares its "
    "capacity with every other workspace in the same region during business hours.",
    "Meeting rooms for more than ten people are booked through the facilities portal at least "
    "two days in advance; the portal shows each room's equipment, accessibility features and "
    "catering options, and sends the organiser a reminder the day before.",
    "Database migrations between major versions are done by creating a replica on the new "
    "version, letting it catch up through logical replication, pausing writes for a few "
    "seconds, switching the application's connection string and then retiring the old primary. "
    "Test the application against the replica first: some functions and default settings "
    "changed between the two versions, and the query planner may choose different plans for "
    "queries that depend on statistics, so compare the slowest queries before and after.",
]

TEXTS = QUESTIONS + PASSAGES
