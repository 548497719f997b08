// mppx, the TypeScript MPP SDK, buys from a running storefront as a real client.
//
// Driven by tests/mpp_clients.rs, which starts the storefront and the Stripe stand-in. Reads
// STOREFRONT_URL, MPP_SECRET, PRODUCT and CONFIGURATION (JSON) from the environment and prints one
// JSON object describing what happened; exits non-zero on the first broken expectation.
import { randomUUID } from 'node:crypto'
import { Challenge, Credential, Receipt } from 'mppx'
import { Mppx, stripe } from 'mppx/client'

const base = process.env.STOREFRONT_URL.replace(/\/$/, '')
const secret = process.env.MPP_SECRET
const product = process.env.PRODUCT
const configuration = JSON.parse(process.env.CONFIGURATION)
const orders = `${base}/api/v1/orders`

const orderBody = () => ({ request_id: randomUUID(), product_id: product, configuration })

function expect(condition, what) {
  if (!condition) {
    console.log(JSON.stringify({ failed: what }))
    process.exit(1)
  }
}

const post = (f, body, headers = {}) =>
  f(orders, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

const report = {}

// 1. 402 -> pay -> success, with a receipt the SDK parses.
const seen = {}
const good = Mppx.create({
  polyfill: false,
  methods: [
    stripe.charge({
      paymentMethod: 'pm_card_visa',
      createToken: async ({ challenge }) => {
        seen.challenge = challenge
        seen.spt = `spt_ok_${randomUUID().replaceAll('-', '')}`
        return seen.spt
      },
    }),
  ],
})
const body = orderBody()
const paid = await post(good.fetch, body)
const paidText = await paid.text()
expect(paid.status === 201 || paid.status === 202, `paid order answered ${paid.status}: ${paidText}`)
const receipt = Receipt.deserialize(paid.headers.get('payment-receipt'))
expect(receipt.status === 'success', 'the receipt says success')
const order = JSON.parse(paidText).data.order
expect(order.payment_status === 'paid', 'the order is paid')
expect(Challenge.verify(seen.challenge, { secretKey: secret }), "the challenge id verifies with mppx's HMAC check")
report.order_id = order.id
report.order_status = order.status
report.receipt_reference = receipt.reference
report.status_url = order.status_url

// 2. The same credential again: the identical request replays, another order is refused.
const replayed = Credential.serialize({
  challenge: seen.challenge,
  payload: { spt: seen.spt, externalId: seen.challenge.request.externalId },
})
const same = await post(fetch, body, { authorization: replayed })
expect(same.headers.get('idempotent-replayed') === 'true', `identical retry replays: ${same.status}`)
const other = await post(fetch, orderBody(), { authorization: replayed })
const otherBody = await other.json()
expect(other.status === 402, `replayed credential on another order: ${other.status}`)
expect(otherBody.credential_status === 'rejected', 'the replayed credential is rejected')
report.replay_code = otherBody.error.code

// 3. A declined token: 402, credential_status rejected, a reason, nothing charged.
const declining = Mppx.create({
  polyfill: false,
  maxPaymentRetries: 1,
  methods: [
    stripe.charge({
      paymentMethod: 'pm_card_visa',
      createToken: async () => `spt_decline_${randomUUID().replaceAll('-', '')}`,
    }),
  ],
})
const declined = await post(declining.fetch, orderBody())
const declinedBody = await declined.json()
expect(declined.status === 402, `declined answered ${declined.status}`)
expect(declinedBody.credential_status === 'rejected', 'declined credential is rejected')
expect(Boolean(declinedBody.reason), 'a reason is given')
report.declined_code = declinedBody.error.code

console.log(JSON.stringify(report))
