import asyncio

from multiagents import Runtime, StepFailed, WorkflowBuilder, worker


@worker("reserve")
async def reserve(order):
    return {"reservation_id": f"RES-{order['order_id']}"}


@worker("release")
async def release(ctx):
    print("released", ctx["reservation_id"])


@worker("charge")
async def charge(order):
    return {"payment_id": f"PAY-{order['order_id']}"}


@worker("refund")
async def refund(ctx):
    print("refunded", ctx["payment_id"])


@worker("ship")
async def ship(order):
    raise StepFailed("no carrier delivers to Atlantis")


saga = (
    WorkflowBuilder("order")
    .add_step("reserve", reserve, compensation=release)
    .add_step("charge", charge, compensation=refund)
    .add_step("ship", ship)
    .build()
)


async def main():
    async with Runtime(workflows=[saga], store="sqlite:///orders.db") as rt:
        status = await rt.run("order", {"order_id": 7, "city": "Atlantis"})
        print(status["state"], "-", status["error"]["message"])


asyncio.run(main())
